from .aspirate import Anticoagulant, Aspirate, AspirateStatus, Condition
from .events import CustodyEvent
from .identifiers import IdSequence
from .processing import Passage, Processing, ProcessingStatus, QcResult, QcTest
from .trial import Arm, ArmSchedule, Participant, Site, Study, Treatment, Visit, VisitType
from .unit import ContainerType, FreezingRun, ProductUnit, UnitStatus

__all__ = [
    "Anticoagulant",
    "Arm",
    "ArmSchedule",
    "Aspirate",
    "AspirateStatus",
    "Condition",
    "ContainerType",
    "CustodyEvent",
    "FreezingRun",
    "IdSequence",
    "Participant",
    "Passage",
    "Processing",
    "ProcessingStatus",
    "ProductUnit",
    "QcResult",
    "QcTest",
    "Site",
    "Study",
    "Treatment",
    "UnitStatus",
    "Visit",
    "VisitType",
]
