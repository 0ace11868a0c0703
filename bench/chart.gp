# The main comparison for docs/benchmarks.md: one acquire+release pair per client, p50
# (bar, labelled) and p99 (point), on a log scale. Data: bench/report.py writes
# "label<TAB>p50_ns<TAB>p99_ns<TAB>language" lines; bench/run.sh calls
#   gnuplot -e "datafile='...'; outfile='...'" bench/chart.gp
set terminal pngcairo size 1100,620 font "DejaVu Sans,10"
set output outfile
set datafile separator "\t"
set title "shmtimer: one acquire+release pair, per client (lower is better; log scale)"
set ylabel "time per pair"
set logscale y 10
set yrange [1:1e7]
set ytics ("1 ns" 1, "10 ns" 10, "100 ns" 100, "1 µs" 1000, "10 µs" 1e4, "100 µs" 1e5, "1 ms" 1e6, "10 ms" 1e7)
set grid ytics mytics lc rgb "#dddddd"
set style fill solid 0.85 border -1
set boxwidth 0.6
set xtics rotate by -25 left nomirror
set key top left
set bmargin 8
stats datafile using 2 nooutput
set xrange [-0.6:STATS_records - 0.4]
fmt(ns) = ns < 100 ? sprintf("%.1f ns", ns) : ns < 1000 ? sprintf("%.0f ns", ns) : \
          ns < 1e6 ? sprintf("%.1f µs", ns / 1000) : sprintf("%.2f ms", ns / 1e6)
plot datafile using 0:2:($4 == 1 ? 0x3b7dd8 : 0xe07b39):xtic(1) with boxes lc rgb variable notitle, \
     "" using 0:2:(fmt($2)) with labels offset 0,0.8 notitle, \
     "" using ($0 + 0.22):3 with points pt 7 ps 1.1 lc rgb "#222222" title "p99", \
     NaN with boxes lc rgb "#3b7dd8" title "C++ (bar: p50)", \
     NaN with boxes lc rgb "#e07b39" title "Python (bar: p50)"
