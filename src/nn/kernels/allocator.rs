//! Keeps freed activation buffers in the process heap. A training step
//! allocates and frees tens of megabytes of activations and gradients;
//! glibc's defaults serve blocks over 128 KiB with fresh `mmap`s and return
//! freed heap tops to the kernel, so every step page-faults its memory back
//! in (about 160k faults and 15% of the time in a 30-step S1 bench).

/// Raises glibc's mmap threshold to its maximum (32 MiB) and its trim
/// threshold to 1 GiB. Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator tunables; it is called
        // before any worker thread starts.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
