"""The CUDA kernels, wrapped per family (``embkern._cuda_ops.<family>``); see ``_cuda_backend``."""
