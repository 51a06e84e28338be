"""Archive Azure Communication Services call recordings into your own blob storage.

Event Grid → webhook → one queue job per chunk → streamed, verified copy → delete from ACS.
"""

__version__ = "0.3.0"
