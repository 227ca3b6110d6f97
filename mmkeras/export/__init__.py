"""Export for TF Serving: SavedModels with raw-input signatures, checked and versioned."""

from mmkeras.export.checks import check_ops, check_parity
from mmkeras.export.export import export_run
from mmkeras.export.publish import versions
