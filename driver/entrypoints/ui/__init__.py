"""The status page: the address space at a glance, server-rendered, read-only."""
