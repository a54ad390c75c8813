"""Spiking path: CNN -> SNN conversion, time-batched simulation, Loihi quantisation, core mapping,
modeled energy / latency (Davies et al. 2018, Table 2) and NIR export.

Import the submodules (``edgefer.snn.convert``, ``.simulate``, ``.loihi``, ``.evaluate``,
``.nir_export``); the ``edgefer snn`` commands live in ``edgefer.snn.cli``.
"""

# The study's simulation length: 50 timesteps (of 1 ms) per image, arXiv 2403.08792 (see DESIGN.md).
STUDY_TIMESTEPS = 50
