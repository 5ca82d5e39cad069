"""The exit codes of `graphexplain trace`, in one light module (the CLI's
--help and usage errors need them before torch is loaded)."""

VERIFIED = 0  # every explained backward call verified against torch
MISMATCH = 1  # a derived gradient disagrees with torch's
USAGE = 2  # no such script, not Python, an output that would be overwritten, a bad --target
SCRIPT_ERROR = 3  # the script raised; what was captured before it is reported
NO_BACKWARD = 4  # the script never called backward, or no call could be explained
NO_RULE = 5  # incomplete: no mismatch, but some numbers are not derived (no-rule, rule-error, unchecked, ...)
