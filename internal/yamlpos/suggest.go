package yamlpos

import "strings"

// Closest returns the candidate that word most likely misspells: one that
// differs only in case, else the nearest within a small edit distance
// (letters inserted, deleted, changed or swapped; at most one for short
// words, two for longer ones). It returns "" when none is close, or when
// word is a candidate itself. Ties go to the earlier candidate.
func Closest(word string, candidates []string) string {
	limit := 1
	if len(word) >= 6 {
		limit = 2
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if c == word {
			return ""
		}
		d := distance(strings.ToLower(word), strings.ToLower(c))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b: the
// edits (insert, delete, substitute, swap two adjacent bytes) that turn
// one into the other.
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
