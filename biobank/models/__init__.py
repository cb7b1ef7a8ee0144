from .aspirate import Anticoagulant, Aspirate, AspirateStatus, Condition
from .events import AuditChainHead, CustodyEvent
from .identifiers import IdSequence
from .printing import Printer, PrinterDpi, PrintJob, PrintJobStatus
from .processing import Passage, Processing, ProcessingStatus, QcResult, QcTest
from .randomisation import RandomisationEntry
from .release import (
    Dose,
    DoseStatus,
    IdentityCheck,
    IdentityStage,
    QcRelease,
    Signature,
    SignatureMeaning,
    Unblinding,
)
from .reports import ExportKind, ExportLog
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
    "AuditChainHead",
    "BoxType",
    "Condition",
    "Container",
    "ContainerKind",
    "ContainerType",
    "CustodyEvent",
    "Dose",
    "DoseStatus",
    "ExportKind",
    "ExportLog",
    "FreezingRun",
    "IdSequence",
    "IdentityCheck",
    "IdentityStage",
    "Labelling",
    "Participant",
    "Passage",
    "Placement",
    "PrintJob",
    "PrintJobStatus",
    "Printer",
    "PrinterDpi",
    "Processing",
    "ProcessingStatus",
    "ProductUnit",
    "QcRelease",
    "QcResult",
    "QcTest",
    "RandomisationEntry",
    "Signature",
    "SignatureMeaning",
    "Site",
    "StorageKind",
    "StorageUnit",
    "Study",
    "TemperatureReading",
    "Treatment",
    "Unblinding",
    "UnitStatus",
    "Visit",
    "VisitType",
]
