"""The sensor-model plug-in contract: ``SensorModel``, the sensor table, and the registry.

A sensor model is one kind of device: what it measures, how often, where the
city puts it, and how its readings are made.  ``values`` computes one reading
for *every* sensor of the model at once (numpy arrays), from the report times,
a per-round random generator and the shared city state.  Register a model with
``@register`` (or the ``ioc.simulators`` entry-point group, or ``--plugin
module``) and ``ioc simulate`` runs it without any change to ingest or
analytics, which only see the MQTT topics and payloads.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from core.errors import ConfigError
from core.metrics import METRICS
from core.topics import SENSOR_ID_RE
from core.types import SensorKind
from simulators import geo, noise
from simulators.noise import FloatArray, IntArray, UIntArray

if TYPE_CHECKING:
    from simulators.city import City

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ioc.simulators"
LAYOUT_SEED = 2026  # the city's layout is fixed; the run seed drives readings and incidents


@dataclass(slots=True)
class SensorTable:
    """The sensors of one model, column-wise: index ``i`` is one device."""

    kind: SensorKind
    ids: list[str]
    names: list[str]
    lat: FloatArray
    lon: FloatArray
    areas: list[str]
    attrs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    keys: UIntArray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not self.attrs:
            self.attrs = [{} for _ in range(n)]
        for name, col in (("names", self.names), ("lat", self.lat), ("lon", self.lon)):
            if len(col) != n:
                raise ConfigError(f"sensor table column {name} has {len(col)} rows, not {n}")
        self.index = {s: i for i, s in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: IntArray) -> SensorTable:
        """The rows ``idx`` as a new table (used to split sensors over connections)."""
        pos = [int(i) for i in idx]
        return SensorTable(
            kind=self.kind,
            ids=[self.ids[i] for i in pos],
            names=[self.names[i] for i in pos],
            lat=self.lat[idx],
            lon=self.lon[idx],
            areas=[self.areas[i] for i in pos],
            attrs=[self.attrs[i] for i in pos],
            extra={k: v[idx] for k, v in self.extra.items()},
            keys=self.keys[idx] if len(self.keys) else self.keys,
        )


class SensorModel(ABC):
    """One kind of simulated device.  Subclass, set the class variables, write ``values``.

    ``values(t, rng, city)`` returns ``{metric: array}`` with one value per sensor
    in ``self.sensors``; ``t`` holds each sensor's report time (epoch seconds,
    UTC).  For readings that depend only on (seed, sensor, time) use the
    ``normal``/``uniform``/``smooth`` helpers; ``rng`` is a numpy generator seeded
    from (seed, model, round) for models that do not need that guarantee.
    Values are clamped to the catalogue's physical range and rounded to
    ``decimals`` by the engine.
    """

    name: ClassVar[str]
    kind: ClassVar[SensorKind] = SensorKind.GENERIC
    metrics: ClassVar[tuple[str, ...]]
    interval_s: ClassVar[float] = 60.0
    default_count: ClassVar[int] = 10
    id_prefix: ClassVar[str] = "dev"
    decimals: ClassVar[Mapping[str, int]] = {}

    def __init__(self, sensors: SensorTable, seed: int, interval_s: float | None = None) -> None:
        self.sensors = sensors
        self.seed = seed
        self.interval = float(interval_s or type(self).interval_s)
        if len(sensors.keys) != len(sensors):
            sensors.keys = noise.keys_of(seed, sensors.ids)
        self._streams: dict[str, UIntArray] = {}

    # --- what a plug-in writes -------------------------------------------------

    @abstractmethod
    def values(
        self, t: FloatArray, rng: np.random.Generator, city: City
    ) -> Mapping[str, FloatArray]:
        """One reading per sensor at times ``t``: ``{metric: array of len(t)}``."""

    @classmethod
    def place(cls, n: int, prefix: str = "") -> SensorTable:
        """Where the city puts ``n`` of these; default: spread over the urban districts."""
        return spread_over_districts(cls, n, prefix)

    def prepare(self, city: City) -> None:  # noqa: B027 (optional hook)
        """Called once the whole city exists (e.g. to find nearby cameras)."""

    # --- helpers ---------------------------------------------------------------

    def _skeys(self, name: str) -> UIntArray:
        sk = self._streams.get(name)
        if sk is None or len(sk) != len(self.sensors.keys):
            sk = self._streams[name] = noise.stream_keys(
                self.sensors.keys, noise.stream_id(f"{type(self).name}/{name}")
            )
        return sk

    def normal(self, stream: str, t: FloatArray) -> FloatArray:
        """Independent N(0, 1) per (sensor, reading time)."""
        return noise.normal_k(self._skeys(stream), noise.millis(t))

    def uniform(self, stream: str, t: FloatArray) -> FloatArray:
        """Independent U[0, 1) per (sensor, reading time)."""
        return noise.uniform_k(self._skeys(stream), noise.millis(t))

    def smooth(self, stream: str, t: FloatArray, scale_s: float) -> FloatArray:
        """Per-sensor noise that wanders over ``scale_s`` seconds."""
        return noise.smooth_k(self._skeys(stream), t, scale_s)

    def constant(self, stream: str) -> FloatArray:
        """A fixed U[0, 1) per sensor (a device's own character)."""
        return noise.uniform_k(self._skeys(stream), 0)


def sensor_id(prefix: str, id_prefix: str, i: int) -> str:
    return f"{prefix}{id_prefix}-{i + 1:05d}"


def spread_over_districts(
    model: type[SensorModel],
    n: int,
    prefix: str = "",
    districts: Sequence[geo.District] | None = None,
) -> SensorTable:
    """``n`` sensors in the urban districts, weighted by district size (fixed layout)."""
    where = list(districts or geo.URBAN)
    weights = np.array([max(d.weight, 0.1) for d in where])
    cum = np.cumsum(weights) / weights.sum()
    ids = [sensor_id(prefix, model.id_prefix, i) for i in range(n)]
    keys = noise.index_keys(noise.key_of(LAYOUT_SEED, model.name), n)
    u = noise.uniform(keys, 1, 0)
    r = np.sqrt(noise.uniform(keys, 2, 0))
    a = noise.uniform(keys, 3, 0) * 2 * np.pi
    pick = np.searchsorted(cum, u, side="right").clip(0, len(where) - 1)
    d_lat = np.array([d.lat for d in where])[pick]
    d_lon = np.array([d.lon for d in where])[pick]
    rk = r * np.array([d.radius_km for d in where])[pick]
    lat = d_lat + rk * np.sin(a) / geo.KM_PER_DEG_LAT
    lon = d_lon + rk * np.cos(a) / (111.32 * np.cos(np.radians(d_lat)))
    areas = [where[d].name for d in pick.tolist()]
    names = [f"{model.name.replace('_', ' ')} {i + 1} ({areas[i]})" for i in range(n)]
    return SensorTable(model.kind, ids, names, lat.round(5), lon.round(5), areas)


def table_from_sites(
    model: type[SensorModel], sites: Sequence[geo.Site], n: int, prefix: str = ""
) -> SensorTable:
    """The first sensors at named ``sites``, any more spread over the districts."""
    named = list(sites[:n])
    rest = spread_over_districts(model, n, prefix)
    lat = rest.lat.copy()
    lon = rest.lon.copy()
    names = list(rest.names)
    areas = list(rest.areas)
    attrs: list[dict[str, Any]] = [{} for _ in range(n)]
    for i, s in enumerate(named):
        lat[i], lon[i], names[i], areas[i] = s.lat, s.lon, s.name, s.area
        if s.kind_hint:
            attrs[i]["site_type"] = s.kind_hint
    return SensorTable(model.kind, rest.ids, names, lat, lon, areas, attrs)


# --- registry -------------------------------------------------------------------

MODELS: dict[str, type[SensorModel]] = {}
M = TypeVar("M", bound=type[SensorModel])


def validate_model(cls: type[SensorModel]) -> None:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"sensor model {cls.__qualname__} needs a class attribute name")
    metrics = getattr(cls, "metrics", None)
    if not metrics:
        raise ConfigError(f"sensor model {name} declares no metrics")
    for m in metrics:
        spec = METRICS.get(m)
        if spec is None or spec.derived:
            known = ", ".join(k for k, v in METRICS.items() if not v.derived)
            raise ConfigError(
                f"sensor model {name}: metric {m!r} is not in the catalogue ({known})"
            )
    if not SENSOR_ID_RE.match(f"{cls.id_prefix}-00001"):
        raise ConfigError(f"sensor model {name}: id_prefix {cls.id_prefix!r} makes invalid ids")
    if not 0.01 <= cls.interval_s <= 86_400:
        raise ConfigError(f"sensor model {name}: interval_s must be in 0.01..86400")


def register(cls: M) -> M:
    """Class decorator: make a ``SensorModel`` available to ``ioc simulate`` by its ``name``."""
    validate_model(cls)
    old = MODELS.get(cls.name)
    if old is not None and old is not cls:
        logger.warning("sensor model %s re-registered by %s", cls.name, cls.__qualname__)
    MODELS[cls.name] = cls
    return cls


def load_plugin(spec: str) -> list[str]:
    """Import ``package.module`` (models register themselves) or ``module:Class``."""
    module_name, _, attr = spec.partition(":")
    before = set(MODELS)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import sensor plug-in {module_name!r}: {exc}") from None
    if attr:
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, SensorModel)):
            raise ConfigError(f"{spec} is not a SensorModel subclass")
        register(cls)
        return [cls.name]
    return sorted(set(MODELS) - before)


def load_entry_points(loader: Callable[[str], list[str]] = load_plugin) -> list[str]:
    """Load every plug-in announced in the ``ioc.simulators`` entry-point group."""
    names: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names += loader(ep.value)
    return names


def builtin_models() -> dict[str, type[SensorModel]]:
    """The registry, with the built-in Hanoi models (re-)registered."""
    from simulators import kinds

    for name in kinds.__all__:
        cls = getattr(kinds, name)
        MODELS.setdefault(cls.name, cls)
    return MODELS
