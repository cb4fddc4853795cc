fn main() {
    #[cfg(target_arch = "wasm32")]
    web_viz::run();
}
