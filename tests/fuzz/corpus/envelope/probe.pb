
$0b7e8f52-3c1d-4e7a-9a55-5f2d8c1e9b10SyntheticProbe"c-1*o-10€°­ÇŸˆ‘:
fuzzi-1B 0123456789abcdef0123456789abcdefJ$6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7ò
p-1