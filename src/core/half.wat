;; float32 → IEEE float16 for half.ts, four values at a time in WebAssembly SIMD128, the same
;; bits as half.ts's general path (to nearest even; subnormals, inf and quiet NaN, sign kept).
;; scripts/build-wasm.mjs assembles this file into half-wasm.ts.
(module
  ;; float32 input at 0 (up to 32768 values), float16 output at 131072: three pages.
  (memory (export "memory") 3)

  ;; Converts `n` values (a multiple of 4) from offset 0 to float16 bits at offset 131072.
  (func (export "toHalf") (param $n i32)
    (local $i i32) (local $o i32) (local $end i32)
    (local $x v128) (local $a v128) (local $normal v128) (local $big v128) (local $small v128)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $o (i32.const 131072))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $x (v128.load (local.get $i)))
        (local.set $a (v128.and (local.get $x) (i32x4.splat (i32.const 0x7fffffff))))
        ;; Normal halves: rebias the exponent (−112 << 23) and round the 13 dropped mantissa bits
        ;; to nearest even by adding 0xfff plus the lowest kept bit; a carry bumps the exponent.
        (local.set $normal
          (i32x4.shr_u
            (i32x4.add
              (i32x4.sub (local.get $a) (i32x4.splat (i32.const 0x37fff001)))
              (v128.and (i32x4.shr_u (local.get $a) (i32.const 13)) (i32x4.splat (i32.const 1))))
            (i32.const 13)))
        ;; |x| ≥ 2^16 is inf; NaN stays a (quiet) NaN.
        (local.set $big
          (v128.bitselect
            (i32x4.splat (i32.const 0x7e00))
            (i32x4.splat (i32.const 0x7c00))
            (i32x4.gt_s (local.get $a) (i32x4.splat (i32.const 0x7f800000)))))
        ;; |x| < 2^-14: a subnormal half's bits are |x| · 2^24 (an exact scaling) rounded to nearest
        ;; even, up to 0x400 (the smallest normal) at the top.
        (local.set $small
          (i32x4.trunc_sat_f32x4_s
            (f32x4.nearest (f32x4.mul (local.get $a) (v128.const f32x4 16777216 16777216 16777216 16777216)))))
        (v128.store64_lane 0 (local.get $o)
          (i16x8.narrow_i32x4_u
            (local.tee $x
              (v128.or
                (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x8000)))
                (v128.bitselect
                  (local.get $small)
                  (v128.bitselect
                    (local.get $big)
                    (local.get $normal)
                    (i32x4.ge_s (local.get $a) (i32x4.splat (i32.const 0x47800000))))
                  (i32x4.lt_s (local.get $a) (i32x4.splat (i32.const 0x38800000))))))
            (local.get $x)))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 8)))
        (br $next)))))
