"""Date formats for English (the admin's language): ISO-like, to the second, with the zone.

Operators compare these times with log lines and with robots' clocks; Django's default
(`N j, Y, P`) shows minutes and no zone.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
