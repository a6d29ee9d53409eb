package gateway

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tasks run at once, each exactly once, however many are started together;
// a worker that finished one takes the next; idle workers end.
func TestWorkersRunEveryTaskAndEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(50 * time.Millisecond)
	const tasks = 200
	var ran atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(tasks)
	for range tasks {
		w.run(func() {
			defer wg.Done()
			<-release // all at once: none waits for another's worker
			ran.Add(1)
		})
	}
	close(release)
	wg.Wait()
	if ran.Load() != tasks {
		t.Fatalf("%d of %d tasks ran", ran.Load(), tasks)
	}
	waitGoroutines(t, before)
	// One after another, a worker that finished one takes the next. (The
	// next may come before the worker is back waiting, and get a new one:
	// a few, not one per task, each of which would wait 50 ms.)
	for i := range 20 {
		done := make(chan int)
		w.run(func() { done <- i })
		if got := <-done; got != i {
			t.Fatalf("task %d answered %d", i, got)
		}
	}
	if n := runtime.NumGoroutine(); n > before+10 {
		t.Fatalf("%d goroutines after 20 tasks one after another, %d before: workers were not reused", n, before)
	}
	waitGoroutines(t, before)
}

// waitGoroutines waits until no more than n goroutines run: idle workers
// end by themselves.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after the workers' idle time, %d before", runtime.NumGoroutine(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
