from .aspirate import Anticoagulant, Aspirate, AspirateStatus, Condition
from .events import CustodyEvent
from .identifiers import IdSequence
from .processing import Passage, Processing, ProcessingStatus, QcResult, QcTest
from .storage import (
    Accepts,
    BoxType,
    Container,
    ContainerKind,
    Labelling,
    Placement,
    StorageKind,
    StorageUnit,
    TemperatureReading,
)
from .trial import Arm, ArmSchedule, Participant, Site, Study, Treatment, Visit, VisitType
from .unit import ContainerType, FreezingRun, ProductUnit, UnitStatus

__all__ = [
    "Accepts",
    "Anticoagulant",
    "Arm",
    "ArmSchedule",
    "Aspirate",
    "AspirateStatus",
    "BoxType",
    "Condition",
    "Container",
    "ContainerKind",
    "ContainerType",
    "CustodyEvent",
    "FreezingRun",
    "IdSequence",
    "Labelling",
    "Participant",
    "Passage",
    "Placement",
    "Processing",
    "ProcessingStatus",
    "ProductUnit",
    "QcResult",
    "QcTest",
    "Site",
    "StorageKind",
    "StorageUnit",
    "Study",
    "TemperatureReading",
    "Treatment",
    "UnitStatus",
    "Visit",
    "VisitType",
]
