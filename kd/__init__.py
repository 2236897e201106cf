"""kaodian (考点管理系统): the site server of a computer-based vocational exam.

The package is layered (DESIGN.md §3): ``views`` → ``core`` ← ``store``, ``lock``,
``lan``, ``platform`` adapters; ``formats`` depends only on ``errors``.
"""

__version__ = "0.1.0"
