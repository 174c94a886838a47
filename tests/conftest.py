import os

# The Triton kernels run on CPU through Triton's interpreter, which is chosen when a kernel is
# decorated, i.e. when sda.kernels is first imported. So this must precede every import of it.
os.environ.setdefault("TRITON_INTERPRET", "1")
