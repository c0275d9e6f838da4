// Which CPUs flatjax's kernels run on: they are compiled for AVX-512 with VNNI.

extern "C" int FlatjaxKernelsSupported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}
