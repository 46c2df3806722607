"""
Tests for L{twisted_stream._numbers}: the one reader of numbers people give.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_stream._numbers import decimalNumber, isWholeIn, wholeNumber


class WholeNumberTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        for text, value in [("0", 0), ("7", 7), ("007", 7), ("1000000", 1000000)]:
            self.assertEqual(wholeNumber(text, "count", 1000000), value)
        self.assertEqual(wholeNumber("123456789012", "retries"), 123456789012)

    def test_refused(self) -> None:
        """
        Only plain digits within the bounds; the reason names the value and
        quotes what was given, cut short.
        """
        for text in ["-5", "+5", " 5", "5 ", "1_000", "1e3", "5.0", "", "٣", "1000001"]:
            with self.assertRaises(ValueError) as caught:
                wholeNumber(text, "count", 1000000)
            self.assertEqual(str(caught.exception), f"count must be a whole number from 0 to 1000000, not {ascii(text)}")
        with self.assertRaises(ValueError) as caught:
            wholeNumber("x" * 50, "retries")
        self.assertEqual(str(caught.exception), f"retries must be a whole number of at least 0, not {ascii('x' * 40 + '...')}")


class DecimalNumberTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        for text, value in [("0", 0.0), ("1.5", 1.5), (".25", 0.25), ("60", 60.0), ("60.", 60.0), (b"2.5", 2.5)]:
            self.assertEqual(decimalNumber(text, "interval", 0, 60), value)

    def test_refused(self) -> None:
        for text in ["-1", "+1", "1e1", "nan", "inf", "60.01", "", ".", "1,5", " 1"]:
            with self.assertRaises(ValueError) as caught:
                decimalNumber(text, "interval", 0, 60, " of seconds")
            self.assertEqual(
                str(caught.exception), f"interval must be a number of seconds from 0 to 60, not {ascii(text)}"
            )

    def test_above(self) -> None:
        """
        A bound that must be passed, not met, and no upper bound.
        """
        self.assertEqual(decimalNumber("0.001", "a timeout", 0, lowExcluded=True), 0.001)
        self.assertEqual(decimalNumber("1000000", "a timeout", 0, lowExcluded=True), 1e6)
        with self.assertRaises(ValueError) as caught:
            decimalNumber("0", "a timeout", 0, unit=" of seconds", lowExcluded=True)
        self.assertEqual(str(caught.exception), "a timeout must be a number of seconds above 0, not '0'")


class IsWholeInTests(SynchronousTestCase):
    def test_jsonWholeNumbers(self) -> None:
        """
        A whole number as JSON gives it, within the bounds (no upper bound
        unless given); C{true}, C{false}, fractions, text and C{null} are
        not.
        """
        self.assertTrue(isWholeIn(1, 1))
        self.assertTrue(isWholeIn(10**12, 1))
        self.assertTrue(isWholeIn(128, 1, 128))
        for value in (0, 129, True, False, 1.0, 2.5, "2", None, [1]):
            self.assertFalse(isWholeIn(value, 1, 128), value)
