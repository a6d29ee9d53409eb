//go:build race

package integration

// raceEnabled reports whether the race detector is on (it makes everything
// several times slower and every allocation bigger).
const raceEnabled = true
