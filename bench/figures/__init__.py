"""The shipped models' report figures: extremes grid, ROC and score histograms of each."""
