package harness

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the calling OS thread has used, in ns,
// and whether it is known.
func threadCPU() (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}

// yieldThread offers the CPU to another runnable thread of the machine
// (sched_yield(2)) without going through the Go scheduler: on a thread
// locked to its goroutine, runtime.Gosched hands the P to another M and
// parks this one, which wakes threads with futexes and sends reschedule
// interrupts to the other CPU - into a worker that is being timed.
//
// It must be a system call the runtime knows about (Syscall, not
// RawSyscall). A goroutine that spins on sched_yield is in the kernel
// nearly all the time, so the runtime's preemption signal is delivered
// as the call returns, at a PC inside the assembly of the system call
// stub, where a goroutine cannot be preempted; a stop-the-world (a GC
// started by the other worker) then waited for it for seconds (seen:
// cells of 0.3 s taking 6-24 s, "stopping the world" in a goroutine
// dump). In a known system call the goroutine counts as stopped.
func yieldThread() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// sleepWhile blocks the thread while *word == v, until wakeWord or d
// passes (futex(2), private): a blocking system call, so the Go runtime
// knows the thread is away, and no Go scheduler hand-off on the way in.
func sleepWhile(word *atomic.Uint32, v uint32, d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWaitPrivate,
		uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// wakeWord wakes the threads sleeping on word in sleepWhile.
func wakeWord(word *atomic.Uint32) {
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWakePrivate,
		1, 0, 0, 0)
}

// futex(2) operations (linux/futex.h: FUTEX_WAIT or FUTEX_WAKE with
// FUTEX_PRIVATE_FLAG); x/sys/unix does not name them.
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// pinThread pins the calling OS thread (locked to its goroutine) to the
// k-th CPU the process may run on (modulo their number), as the xdp
// engine pins its workers, and returns a function that gives the thread
// its former CPU set back and reports whether it did (call it before
// unlocking the thread; if it fails, keep the thread locked so that it
// exits with its goroutine instead of going back to the runtime pinned).
// Without it the kernel may leave two workers on one CPU for
// milliseconds after they are released together, and a cell measures
// time-slicing. If the CPU set cannot be read or set, the thread stays
// as it was.
func pinThread(k int) (restore func() bool) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil || old.Count() == 0 {
		return func() bool { return true }
	}
	n := k % old.Count()
	cpu := -1
	for c := 0; c < len(old)*int(unsafe.Sizeof(old[0]))*8; c++ {
		if old.IsSet(c) {
			if n == 0 {
				cpu = c
				break
			}
			n--
		}
	}
	if cpu < 0 {
		return func() bool { return true }
	}
	var set unix.CPUSet
	set.Set(cpu)
	if unix.SchedSetaffinity(0, &set) != nil {
		return func() bool { return true }
	}
	return func() bool { return unix.SchedSetaffinity(0, &old) == nil }
}
