#!/usr/bin/env bash
# The README's example picture, drawn by gradcli itself (needs gradcli[plot]): bash docs/make_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
gradcli plot "x*exp(-y*x^2)" --wrt x --at y=0.5 --range -3:3 --orders 0,1,2 --output docs/plot-example.png
