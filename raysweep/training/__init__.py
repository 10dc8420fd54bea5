"""What runs on a worker: the train loop, data on the device, augmentation, fused arrays."""
