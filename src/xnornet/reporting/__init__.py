"""What people read: the results tables and the PNG charts."""
