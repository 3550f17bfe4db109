"""Speed measured side by side: single layers (the bench stage) and whole networks on the engine."""
