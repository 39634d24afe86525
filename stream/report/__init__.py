"""`skewwatch report`: a replay that records what it takes to see a drift, written as one
self-contained HTML page."""
