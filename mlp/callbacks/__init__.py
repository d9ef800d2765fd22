"""What `fit` calls between epochs (the module moved into this package; split next)."""

from . import backup_and_restore as _module
from .backup_and_restore import *  # noqa: F403
from .backup_and_restore import (  # noqa: F401
    METRIC_MODES,
    BackupAndRestore,
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    EpochLogger,
    FunctionCallback,
    History,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
    as_callbacks,
    callback_name,
    metric_mode,
    path_pattern_fields,
    resumed_seed,
)

fcntl = _module.fcntl
