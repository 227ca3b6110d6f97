"""Export for TF Serving: SavedModels with raw-input signatures, checked and versioned."""

from mmkeras.export.checks import check_in_fresh_process, check_ops
from mmkeras.export.export import export_run
from mmkeras.export.publish import versions
