"""The names a user chooses among on the command line: pretraining methods and presets,
aggregators, features, sweep presets. Plain names, no torch: the CLI turns them into typed
choices that are checked before any work starts, and `slamctl infer` imports no torch.
The modules that implement them key their tables by these names (a test checks it)."""

# cell-supervised: a classifier of the true cell labels (cells.csv), the witness-rate sweep's
# reference for the encoder's ceiling; it needs per-cell truth, which real slides lack
PRETRAIN_METHODS = ("slam-ags", "weaksupcon", "pcgrad", "simclr", "supervised", "cell-supervised")
PRETRAIN_PRESETS = ("paper", "tiny")
AGGREGATORS = ("pamil", "abmil", "maxmil")
INSTANCE_LOSSES = ("none", "reference", "negatives")  # training/instance_loss.py
FEATURES = ("h", "z")  # backbone h or projection head z
SWEEP_PRESETS = ("cpu", "smoke", "paper")
# foundation encoders `train embed --encoder NAME --weights FILE` loads (training/foundation.py)
FOUNDATION_ENCODERS = ("dinobloom-s", "dinobloom-b", "dinobloom-l", "dinobloom-g")
FOUNDATION_FEATURES = ("cls",)  # their features: the class token after the final norm
