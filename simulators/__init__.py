"""The city simulator: simulated Hanoi sensors over MQTT, incidents with ground truth, plug-in models.

Plug-in authors need only ``SensorModel`` and ``register`` (see docs/simulators.md).
"""

from simulators.models import SensorModel, SensorTable, register

__all__ = ["SensorModel", "SensorTable", "register"]
