"""Decisions without Ray: the statistics of a verdict (stats), ASHA's rung rule
(rungs), the adaptive-seed plan (seeding) and the simulation that checks their error
rates (calibration). The engine and the tables decide with these; nothing here imports
Ray or torch, and of raysweep only the study's section types (`SeedPlan`)."""
