"""The Ray side: the driver, its plan, the cluster, Tune trainables, rungs, the record writer."""
