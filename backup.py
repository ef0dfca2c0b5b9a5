"""`python backup.py create | list | verify | restore`: the backup command line (backup_cli.py).

The seed and the README name this command; the engine itself lives in engine.py.
"""

import sys

from backup_cli import cli

if __name__ == "__main__":
    sys.exit(cli())
