"""timm's classifier interface, shared by this package's models.

Example:
    >>> from torch import nn
    >>> class Tiny(ClassifierHead):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.num_features, self.num_classes = 8, 10
    ...         self.fc = nn.Linear(8, 10)
    >>> m = Tiny()
    >>> m.reset_classifier(3)
    >>> m.get_classifier().out_features, m.num_classes
    (3, 3)
"""

from __future__ import annotations

from torch import nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Module):
    """A model whose classifier is the linear layer ``fc`` on ``num_features`` features, with
    timm's ``get_classifier`` / ``reset_classifier`` (used by fine-tuning with a new head)."""

    num_features: int
    num_classes: int
    fc: nn.Module

    def get_classifier(self) -> nn.Module:
        """The linear classifier (timm's interface)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier with ``num_classes`` outputs (timm's interface)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
