"""Multi-view kernels (``viewal.kernels``): back-projection, cross-projection, view entropy/divergence,
superpixel overlap. NumPy reference, Numba CPU and Numba CUDA backends (see ``view_entropy_divergence``)."""
