# median.sh - sourced by the bench scripts.
#
# median [EMPTY]: the median of the numbers on stdin, one per line (the mean of the middle two
# when there is an even count); EMPTY ("-" unless given) when there are none.
median() {
    sort -g | awk -v empty="${1:--}" '
        { v[NR] = $1 }
        END {
            if (NR == 0) print empty
            else if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}
