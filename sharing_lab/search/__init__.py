"""The channel number search (paper Sections 2.1, 5.1): the supernet, the controller, the search state, the
session (:mod:`~sharing_lab.search.session`), the loop with its divergence guard, what it records and evaluates,
its checkpoints and resumes, the export, the data-free replay of Φ, and starting a run. Probes, one file each, in
:mod:`~sharing_lab.search.probes` (importing this package registers them)."""

from . import probes  # noqa: F401  (registers the built-in probes)
