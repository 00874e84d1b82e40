"""The applications built on the library: `momentseg predict` over a benchmark split, the demo and the web page."""
