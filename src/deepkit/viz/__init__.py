"""Plots (matplotlib, Agg backend): training curves, confusion matrix, predicted-vs-true, sample grids."""

from deepkit.viz.plots import plot_confusion_matrix, plot_curves, plot_pred_vs_true

__all__ = ["plot_confusion_matrix", "plot_curves", "plot_pred_vs_true"]
