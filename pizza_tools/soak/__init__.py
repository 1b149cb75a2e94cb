"""`pizza soak`: replicas behind nginx on their own PostgreSQL and Redis, under steady
signed-in traffic and a seeded random schedule of faults; nothing accepted may be lost.

The service never imports this package (like bench and drill).
"""
