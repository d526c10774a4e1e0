import Testing
@Test func placeholder_DKPTests() {}
