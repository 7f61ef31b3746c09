package worker

import (
	"sync"
	"testing"
)

func TestJobQueueDeliversEachMessageOnce(t *testing.T) {
	q := newJobQueue(8)
	const workers, n = 8, 10_000
	seen := make([]int, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, ok := q.pop()
				if !ok {
					return
				}
				mu.Lock()
				seen[m.Attempt]++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i += 7 {
		batch := make([]*Message, 0, 7)
		for j := i; j < min(i+7, n); j++ {
			batch = append(batch, &Message{Attempt: j})
		}
		q.push(batch...)
	}
	q.close()
	wg.Wait()
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("message %d delivered %d times", i, c)
		}
	}
}

func TestJobQueueKeepsOrderForOneTaker(t *testing.T) {
	q := newJobQueue(2)
	for i := range 5 {
		q.push(&Message{Attempt: i})
		if i%2 == 1 {
			m, _ := q.pop() // the buffer is compacted as it is reused
			if want := i / 2; m.Attempt != want {
				t.Fatalf("got message %d, want %d", m.Attempt, want)
			}
		}
	}
	q.close()
	for want := 2; want < 5; want++ {
		m, ok := q.pop()
		if !ok || m.Attempt != want {
			t.Fatalf("got %v %v, want message %d", m, ok, want)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop on a closed, empty queue returned a message")
	}
}
