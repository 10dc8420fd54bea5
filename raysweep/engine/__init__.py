"""The Ray side: the driver, the cluster, Tune trainables, fused arrays, rungs, the record writer."""
