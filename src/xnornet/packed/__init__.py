"""The inference side: a trained network's inference form, its packed file, and the engine that
runs it on the XNOR-popcount kernel."""
