"""The benchmark names every command takes (``momentseg predict`` / ``eval --benchmark``), defined only here."""

#: RefVOS benchmarks, all read in the MeViS layout (:mod:`momentseg.data.refvos`).
REFVOS_BENCHMARKS = ("mevis", "revos", "refdavis", "refytvos", "refsav")
#: Temporal sentence grounding benchmarks (:mod:`momentseg.data.tsg`).
TSG_BENCHMARKS = ("charades", "anet", "qvhighlights")
