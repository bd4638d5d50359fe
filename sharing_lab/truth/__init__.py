"""Ground truths of search spaces: reading a table (every architecture trained from scratch, several seeds;
:mod:`~sharing_lab.truth.table`) and scoring a search against it (:mod:`~sharing_lab.truth.scoring`). Tables
ship in ``tables/``; building one is :mod:`sharing_lab.analysis.truth_build`."""
