import Testing
@Test func placeholder_BundleTests() {}
