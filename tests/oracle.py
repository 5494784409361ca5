"""Score models with a known answer, shared by the sampler tests."""

import torch


class OracleScore(torch.nn.Module):
    """Knows the clean distances d0 and returns the exact score of the perturbation kernel,
    s = -(d~ - d0) / sigma^2 (so its Tweedie estimate d~ + sigma^2 s is d0 exactly). It knows only
    distances, so it cannot tell a conformer from its mirror image."""

    def __init__(self, d0):
        super().__init__()
        self.d0 = d0

    def forward(self, z, edge_index, edge_type, d, sigma, half_edges=None, edge_pair=None):
        return -(d - self.d0) / sigma**2
