//! Link libtorch so that its CUDA backend registers, bake in an rpath so the binary runs
//! without LD_LIBRARY_PATH, and compile what tch does not expose (csrc/: the bf16 autocast switch, fused
//! Adam) against libtorch's headers.
fn main() {
    // torch-sys exports the folder it linked against (links = "tch").
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report libtorch's folder");
    // Without --no-as-needed the linker drops libtorch_cuda (no symbol is used directly), so CUDA
    // would never register its kernels.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib}");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-ltorch_cpu");
    println!("cargo:rustc-link-arg=-lc10");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=GENSEG_LIBTORCH_LIB={lib}");
    // The headers sit beside the libraries, in the PyPI wheel (torch/lib, torch/include) as in
    // a libtorch download.
    let include = std::path::Path::new(&lib).join("../include");
    println!("cargo:rerun-if-changed=csrc");
    cc::Build::new()
        .cpp(true)
        .files(["csrc/autocast.cpp", "csrc/fused_adam.cpp"])
        .include(&include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("genseg_torch_extras");
}
