# Sourced first by the scripts beside it: `-h` or `--help` as the first
# argument prints the comment block at the top of the script (what it does,
# its arguments and environment) and exits before anything is installed,
# built or run.
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$0"
  exit 0
fi
