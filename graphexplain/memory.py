"""Big arrays handed back to the system as soon as they are freed.

Note [big blocks returned at once]
glibc's malloc serves a block over its mmap threshold with a mapping of its
own, returned to the system on free, but it raises the threshold to the
size of each such block freed (up to 32 MB): after the first 16 MB tensor
is freed, every later one comes from the heap, and a freed block in the
middle of the heap stays in the process. On a 2000×2000 matmul the script
left ~90 MB so held, and the derivation, which makes and drops a 32 MB
array at each step, held as much again beyond what it used. Once the
script has run, graphexplain fixes the threshold at THRESHOLD (which stops
its growth) and trims the heap (malloc_trim): the memory the process holds
is then the memory it uses. Elsewhere than glibc nothing changes; the
numbers computed never do.

Note [a threshold above the page-sized arrays]
The threshold was 1 MB at first. A ResNet-18 on a CIFAR batch makes and
drops 1–4 MB arrays by the thousand (its activations in float64), and each
was then a fresh mapping, faulted in page by page: 800,000 page faults,
2.5–4 s of system time beside the explanation's own 5 s. At 4 MB those
come from the heap and are used again (220,000 faults, about what the
peak itself needs, and 0.6 s), while the arrays that decide the peak, a
2000×2000 matrix's 16 and 32 MB, still get mappings of their own and go
back when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# bytes: a block this big or bigger gets a mapping of its own (Note [a threshold above the page-sized arrays])
THRESHOLD = 4 << 20


def return_big_blocks_from_now() -> None:
    """For the CLI, once the user's script is done (Note [big blocks returned at once])."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: its malloc is left as it is
        return
    mallopt(M_MMAP_THRESHOLD, THRESHOLD)
    malloc_trim(0)
