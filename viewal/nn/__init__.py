"""The network and its training: DeepLabv3+ with MC dropout, auxiliary heads, ImageNet starts, your own
network's predictor, training on partial labels, the training aids (max-entropy augmentation, pseudo-labels,
rotation), SimSiam pretraining and data-parallel training. Below scoring; it knows nothing of selection."""
