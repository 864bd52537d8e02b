"""mask_kernels"""
