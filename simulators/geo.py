"""Hanoi's geography for the simulator: districts, main roads, flood spots, stations.

Coordinates are real places, rounded to about 100 m; they place sensors where a
city would have them, they are not a survey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

KM_PER_DEG_LAT = 110.57


@dataclass(frozen=True, slots=True)
class District:
    name: str
    lat: float
    lon: float
    radius_km: float
    urban: bool = True
    weight: float = 1.0  # share of city-wide sensors placed here


DISTRICTS: tuple[District, ...] = (
    District("Hoàn Kiếm", 21.0285, 105.8542, 1.4, weight=1.2),
    District("Ba Đình", 21.0340, 105.8180, 1.8, weight=1.2),
    District("Đống Đa", 21.0180, 105.8290, 1.8, weight=1.5),
    District("Hai Bà Trưng", 21.0060, 105.8570, 1.8, weight=1.3),
    District("Cầu Giấy", 21.0330, 105.7940, 1.8, weight=1.2),
    District("Thanh Xuân", 20.9930, 105.8110, 1.7, weight=1.1),
    District("Hoàng Mai", 20.9750, 105.8600, 2.5, weight=1.1),
    District("Long Biên", 21.0450, 105.8930, 3.0, weight=0.9),
    District("Tây Hồ", 21.0700, 105.8190, 2.2, weight=0.7),
    District("Nam Từ Liêm", 21.0120, 105.7610, 2.6, weight=0.9),
    District("Bắc Từ Liêm", 21.0700, 105.7600, 3.0, weight=0.7),
    District("Hà Đông", 20.9620, 105.7670, 3.0, weight=0.9),
    District("Thanh Trì", 20.9400, 105.8450, 3.0, weight=0.4),
    District("Gia Lâm", 21.0200, 105.9400, 4.0, weight=0.3),
    District("Đông Anh", 21.1370, 105.8500, 5.0, weight=0.3),
    District("Sóc Sơn", 21.2560, 105.8480, 8.0, urban=False, weight=0.0),
    District("Ba Vì", 21.0800, 105.3800, 9.0, urban=False, weight=0.0),
)

URBAN = tuple(d for d in DISTRICTS if d.urban)


@dataclass(frozen=True, slots=True)
class Road:
    name: str
    points: tuple[tuple[float, float], ...]  # (lat, lon) waypoints; vertices are intersections
    lanes: int = 4  # a rough size: sets the cameras' capacity and free speed


ROADS: tuple[Road, ...] = (
    Road(
        "Giải Phóng",
        ((21.0070, 105.8410), (20.9900, 105.8410), (20.9640, 105.8420), (20.9420, 105.8440)),
        6,
    ),
    Road(
        "Nguyễn Trãi",
        ((21.0030, 105.8200), (20.9930, 105.8070), (20.9850, 105.7930), (20.9700, 105.7760)),
        6,
    ),
    Road("Đường Láng", ((21.0230, 105.8010), (21.0130, 105.8080), (21.0030, 105.8180)), 4),
    Road(
        "Trường Chinh",
        ((21.0030, 105.8200), (21.0000, 105.8300), (21.0000, 105.8400), (21.0010, 105.8500)),
        4,
    ),
    Road("Kim Mã", ((21.0330, 105.8350), (21.0320, 105.8200), (21.0310, 105.8100)), 4),
    Road("Nguyễn Chí Thanh", ((21.0300, 105.8110), (21.0170, 105.8090), (21.0080, 105.8060)), 6),
    Road(
        "Xuân Thủy - Hồ Tùng Mậu",
        ((21.0320, 105.8100), (21.0360, 105.7900), (21.0380, 105.7800), (21.0390, 105.7650)),
        6,
    ),
    Road(
        "Phạm Văn Đồng",
        ((21.0830, 105.7800), (21.0600, 105.7800), (21.0460, 105.7830), (21.0360, 105.7840)),
        8,
    ),
    Road(
        "Vành đai 3",
        (
            (21.0600, 105.7780),
            (21.0200, 105.7840),
            (20.9960, 105.8030),
            (20.9880, 105.8400),
            (20.9820, 105.8650),
        ),
        8,
    ),
    Road("Trần Duy Hưng", ((21.0180, 105.8050), (21.0080, 105.7950), (21.0000, 105.7900)), 6),
    Road("Đại lộ Thăng Long", ((21.0000, 105.7900), (20.9950, 105.7600), (20.9930, 105.7200)), 8),
    Road("Lê Duẩn", ((21.0300, 105.8420), (21.0170, 105.8410), (21.0070, 105.8410)), 4),
    Road(
        "Tôn Đức Thắng - Tây Sơn",
        ((21.0290, 105.8350), (21.0190, 105.8290), (21.0080, 105.8240), (21.0030, 105.8200)),
        4,
    ),
    Road(
        "Đại Cồ Việt - Trần Khát Chân",
        ((21.0080, 105.8410), (21.0070, 105.8500), (21.0080, 105.8640)),
        4,
    ),
    Road("Minh Khai", ((20.9960, 105.8560), (20.9980, 105.8700)), 4),
    Road("Nguyễn Văn Cừ", ((21.0440, 105.8700), (21.0460, 105.8800), (21.0490, 105.8950)), 6),
    Road("Nguyễn Văn Linh", ((21.0380, 105.8960), (21.0300, 105.9150)), 6),
    Road("Âu Cơ - Nghi Tàm", ((21.0530, 105.8380), (21.0680, 105.8290), (21.0800, 105.8250)), 4),
    Road("Lạc Long Quân", ((21.0750, 105.8140), (21.0550, 105.8100), (21.0430, 105.8060)), 4),
    Road("Hoàng Quốc Việt", ((21.0460, 105.8030), (21.0470, 105.7900), (21.0470, 105.7800)), 6),
    Road("Bà Triệu - Hàng Bài", ((21.0260, 105.8530), (21.0160, 105.8500), (21.0080, 105.8490)), 2),
    Road("Trần Hưng Đạo", ((21.0210, 105.8470), (21.0200, 105.8600)), 2),
    Road(
        "Lê Văn Lương - Tố Hữu", ((21.0070, 105.8080), (21.0030, 105.7950), (20.9850, 105.7700)), 6
    ),
    Road(
        "Quang Trung (Hà Đông)", ((20.9770, 105.7780), (20.9650, 105.7680), (20.9550, 105.7600)), 4
    ),
    Road("Pháp Vân - Cầu Giẽ", ((20.9500, 105.8430), (20.9300, 105.8450)), 6),
    Road(
        "Võ Văn Kiệt",
        ((21.0830, 105.7800), (21.1000, 105.7900), (21.1500, 105.8100), (21.1950, 105.8000)),
        8,
    ),
    Road("Yên Phụ - Nghi Tàm", ((21.0430, 105.8480), (21.0550, 105.8430)), 4),
    Road("Cầu Giấy - Kim Mã", ((21.0310, 105.8100), (21.0330, 105.8040), (21.0340, 105.7990)), 4),
    Road("Hoàng Hoa Thám", ((21.0420, 105.8360), (21.0430, 105.8200), (21.0440, 105.8100)), 4),
    Road("Láng Hạ - Thái Hà", ((21.0190, 105.8160), (21.0130, 105.8200), (21.0100, 105.8250)), 4),
    Road(
        "Nguyễn Xiển - Khuất Duy Tiến",
        ((21.0000, 105.7970), (20.9900, 105.8050), (20.9750, 105.8100)),
        6,
    ),
    Road(
        "Lĩnh Nam - Tam Trinh", ((20.9900, 105.8700), (20.9800, 105.8700), (20.9750, 105.8800)), 4
    ),
)


@dataclass(frozen=True, slots=True)
class Site:
    """A named place for a station: (name, lat, lon, area, attributes)."""

    name: str
    lat: float
    lon: float
    area: str
    kind_hint: str = ""  # e.g. "street" or "river" for water gauges
    base: float = 0.0  # e.g. a river gauge's normal level in cm


AIR_SITES: tuple[Site, ...] = (
    Site("Hàng Đậu", 21.0430, 105.8470, "Ba Đình"),
    Site("Hoàn Kiếm Lake", 21.0287, 105.8524, "Hoàn Kiếm"),
    Site("Nguyễn Văn Cừ", 21.0490, 105.8780, "Long Biên"),
    Site("Thành Công", 21.0200, 105.8140, "Ba Đình"),
    Site("Tân Mai", 20.9850, 105.8630, "Hoàng Mai"),
    Site("Kim Liên", 21.0070, 105.8360, "Đống Đa"),
    Site("Mỗ Lao", 20.9800, 105.7800, "Hà Đông"),
    Site("Trung Yên", 21.0150, 105.7990, "Cầu Giấy"),
    Site("Phạm Văn Đồng", 21.0560, 105.7800, "Bắc Từ Liêm"),
    Site("Minh Khai", 20.9980, 105.8650, "Hai Bà Trưng"),
    Site("Tây Mỗ", 21.0050, 105.7450, "Nam Từ Liêm"),
    Site("Nhân Chính", 20.9990, 105.8050, "Thanh Xuân"),
    Site("Quảng An", 21.0640, 105.8250, "Tây Hồ"),
    Site("Đông Anh", 21.1370, 105.8500, "Đông Anh"),
)

WATER_SITES: tuple[Site, ...] = (
    Site("Nguyễn Khuyến", 21.0275, 105.8420, "Đống Đa", "street", 0.0),
    Site("Phan Bội Châu", 21.0240, 105.8450, "Hoàn Kiếm", "street", 0.0),
    Site("Cửa Bắc", 21.0430, 105.8410, "Ba Đình", "street", 0.0),
    Site("Thụy Khuê", 21.0440, 105.8250, "Tây Hồ", "street", 0.0),
    Site("Liễu Giai", 21.0380, 105.8140, "Ba Đình", "street", 0.0),
    Site("Hoàng Quốc Việt", 21.0460, 105.7950, "Cầu Giấy", "street", 0.0),
    Site("Nguyễn Xiển", 20.9890, 105.8080, "Thanh Xuân", "street", 0.0),
    Site("Trần Duy Hưng", 21.0110, 105.7990, "Cầu Giấy", "street", 0.0),
    Site("Minh Khai", 20.9980, 105.8650, "Hai Bà Trưng", "street", 0.0),
    Site("Nguyễn Chính", 20.9780, 105.8560, "Hoàng Mai", "street", 0.0),
    Site("Phạm Văn Đồng", 21.0600, 105.7800, "Bắc Từ Liêm", "street", 0.0),
    Site("Vũ Trọng Phụng", 20.9990, 105.8100, "Thanh Xuân", "street", 0.0),
    Site("Red River at Long Biên", 21.0430, 105.8600, "Long Biên", "river", 420.0),
    Site("Tô Lịch at Cầu Giấy", 21.0340, 105.7990, "Cầu Giấy", "river", 180.0),
    Site("Tô Lịch at Kim Giang", 20.9880, 105.8200, "Thanh Xuân", "river", 220.0),
    Site("Kim Ngưu at Lĩnh Nam", 20.9870, 105.8660, "Hoàng Mai", "river", 200.0),
    Site("Nhuệ at Hà Đông", 20.9700, 105.7800, "Hà Đông", "river", 250.0),
    Site("Sét at Giáp Bát", 20.9850, 105.8450, "Hoàng Mai", "river", 160.0),
    Site("Yên Sở pumping station", 20.9640, 105.8700, "Hoàng Mai", "river", 300.0),
)

# forested hills: forest-fire weather
HILL_SITES: tuple[Site, ...] = (
    Site("Sóc Sơn - Đền Sóc", 21.2870, 105.8080, "Sóc Sơn"),
    Site("Sóc Sơn - Minh Phú", 21.2700, 105.7800, "Sóc Sơn"),
    Site("Sóc Sơn - Hàm Lợn", 21.2950, 105.7850, "Sóc Sơn"),
    Site("Sóc Sơn - Nam Sơn", 21.3050, 105.8300, "Sóc Sơn"),
    Site("Sóc Sơn - Bắc Sơn", 21.3150, 105.8100, "Sóc Sơn"),
    Site("Ba Vì - Vườn Quốc gia", 21.0700, 105.3650, "Ba Vì"),
    Site("Ba Vì - Khánh Thượng", 21.0450, 105.3850, "Ba Vì"),
    Site("Ba Vì - Ba Trại", 21.0900, 105.3900, "Ba Vì"),
    Site("Ba Vì - Vân Hòa", 21.0800, 105.4200, "Ba Vì"),
    Site("Ba Vì - Tản Lĩnh", 21.1050, 105.3950, "Ba Vì"),
)


def km_between(
    lat1: FloatArray | float, lon1: FloatArray | float, lat2: float, lon2: float
) -> FloatArray:
    """Equirectangular distance in km (plenty for a city)."""
    dy = (np.asarray(lat1, dtype=np.float64) - lat2) * KM_PER_DEG_LAT
    dx = (np.asarray(lon1, dtype=np.float64) - lon2) * 111.32 * np.cos(np.radians(lat2))
    return np.asarray(np.hypot(dx, dy), dtype=np.float64)


_D_LAT = np.array([d.lat for d in DISTRICTS])
_D_LON = np.array([d.lon for d in DISTRICTS])
_D_RADIUS = np.array([d.radius_km for d in DISTRICTS])


def nearest_districts(lat: FloatArray, lon: FloatArray) -> npt.NDArray[np.int64]:
    """Index in ``DISTRICTS`` of the district each point belongs to (distance / radius)."""
    la = np.asarray(lat, dtype=np.float64)[:, None]
    lo = np.asarray(lon, dtype=np.float64)[:, None]
    dy = (la - _D_LAT[None, :]) * KM_PER_DEG_LAT
    dx = (lo - _D_LON[None, :]) * 111.32 * np.cos(np.radians(_D_LAT[None, :]))
    return np.asarray(np.argmin(np.hypot(dx, dy) / _D_RADIUS[None, :], axis=1), dtype=np.int64)


def nearest_district(lat: float, lon: float) -> District:
    return DISTRICTS[int(nearest_districts(np.array([lat]), np.array([lon]))[0])]


def road_length_km(road: Road) -> FloatArray:
    """Cumulative distance of each waypoint from the road's start."""
    out = [0.0]
    for (a_lat, a_lon), (b_lat, b_lon) in zip(road.points[:-1], road.points[1:], strict=True):
        out.append(out[-1] + float(km_between(b_lat, b_lon, a_lat, a_lon)))
    return np.array(out)


def point_on_road(road: Road, s_km: float) -> tuple[float, float]:
    """(lat, lon) at ``s_km`` along the road."""
    cum = road_length_km(road)
    pts = np.array(road.points)
    lat = float(np.interp(s_km, cum, pts[:, 0]))
    lon = float(np.interp(s_km, cum, pts[:, 1]))
    return lat, lon
